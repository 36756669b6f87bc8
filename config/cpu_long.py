# The tiny model trained longer on the same 2-core CPU: about 35-45 minutes for all four stages.
# Measured 2026-11-29 in the PREVIOUS toy world (objects kept inside the frame): no better than config/tiny.py
# (teacher 25.0%, Self Forcing 20.3% all-correct). Not yet re-measured in the torus world; the tiny run's
# diagnosis (README, "Status") says why more steps alone are unlikely to teach the motion words.
out_dir = "out/cpu_long"
teacher_iters = 8000
eval_interval = 1000
ckpt_interval = 500
ode_pairs = 512
ode_iters = 600
sf_iters = 400
