# The tiny run: a 2-core laptop CPU; 26 min measured on one core while other jobs held the second (README).
# train.py's defaults ARE the tiny run; this file names them so the command reads the same for every config.
out_dir = "out/tiny"
