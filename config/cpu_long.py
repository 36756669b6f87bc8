# The tiny model trained longer on the same 2-core CPU: about 40-45 minutes for all four stages (estimated from the
# tiny run's per-stage times; the chunk-wise teacher sampler makes the ODE pairs 4x dearer than before).
# Measured 2026-11-29 only in the PREVIOUS toy world (objects kept inside the frame): no better than config/tiny.py
# (teacher 25.0%, Self Forcing 20.3% all-correct). Not yet run with the chunk-wise teacher; the README ("What is
# left is the sign") says why more steps alone are unlikely to fix the direction's sign.
out_dir = "out/cpu_long"
teacher_iters = 8000
eval_interval = 1000
ckpt_interval = 500
ode_pairs = 512
ode_iters = 600
sf_iters = 400
