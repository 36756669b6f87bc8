# The tiny run at guidance 1.5 (train.py's default since 510cd81): 19 min 42 s on a fresh clone on a slower 2-core AMD
# EPYC (AVX2); evaluate.py's 64: teacher / ODE init / Self Forcing 62.5 / 59.4 / 68.8% (over three whole-run seeds
# 58.3 / 54.7 / 57.8%; 51.6 / 46.9 / 45.3% at guidance 3 on the same machine). At guidance 3: 15 min 06 s and 14 min
# 32 s on fresh clones of adcd73b and 7e80b1b (DMD generator learning rate 5e-4; Self Forcing 60.9% on evaluate.py's
# 64, the teacher 62.5%). Before it: 14 min 50 s, 15 min 59 s and 16 min 22 s (the same weights each time, over two
# hours) on the two cores of this machine, fresh clones, with the word code (2026-12-02); the version before it took
# 14 min 28 s on 2026-11-30 and 14 min 48 s to 15 min 30 s on 2026-12-02 (README, "What you will see").
# train.py's defaults ARE the tiny run; this file names them so the command reads the same for every config.
out_dir = "out/tiny"
