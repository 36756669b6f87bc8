# The tiny model trained longer on the same 2-core CPU: about 35 minutes for all four stages.
# For when config/tiny.py's 13 minutes are not enough for motion and shape (see README, "Results").
out_dir = "out/cpu_long"
teacher_iters = 8000
eval_interval = 1000
ckpt_interval = 500
ode_pairs = 512
ode_iters = 600
sf_iters = 400
