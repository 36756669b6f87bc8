# The tiny model trained longer on the same 2-core CPU: about 35-42 minutes for all four stages.
# Measured 2026-11-29: it does NOT do better than config/tiny.py (teacher 25.0%, Self Forcing 20.3% all-correct):
# the teacher plateaus, so motion and shape need a model or world change (README, "Results").
out_dir = "out/cpu_long"
teacher_iters = 8000
eval_interval = 1000
ckpt_interval = 500
ode_pairs = 512
ode_iters = 600
sf_iters = 400
