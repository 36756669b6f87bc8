# The tiny run with its teacher trained twice as long (6,000 steps), on the same 2-core CPU; every other stage as in
# config/tiny.py. Measured 2026-11-29 (README, "A longer teacher"): the teacher alone took 26 min there (with other
# jobs sharing the cores for part of it; about 20 min on quiet cores at tiny's 5.2 steps/s), the rest about 4 min.
# Twice the teacher steps bring triangles (shape 29% -> 54% over the 144 object prompts) but not squares, and not
# the sign of a motion: no CPU config here reaches the 90% target yet.
out_dir = "out/cpu_long"
teacher_iters = 6000
eval_interval = 1000
