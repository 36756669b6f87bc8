# The tiny run: 14 min 28 s on the two cores of this machine, fresh clone; 16 min 3 s on a slower day, and 14 min
# 48 s to 15 min 30 s there once the ODE pairs were made 16 videos a call (README, "What you will see").
# train.py's defaults ARE the tiny run; this file names them so the command reads the same for every config.
out_dir = "out/tiny"
