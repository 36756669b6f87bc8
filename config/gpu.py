# A GPU-sized run (one modern GPU, bf16 autocast): a wider, deeper model at 64x64 for longer.
# Expected: tens of minutes on one H100-class GPU. Not run in CI; CPU users want config/tiny.py.
out_dir = "out/gpu"
resolution = 64
patch = 8
num_frames = 12
width = 384
depth = 8
heads = 6
text_depth = 2
teacher_iters = 20000
teacher_batch = 64
teacher_lr = 3e-4
ode_pairs = 2048
ode_iters = 3000
ode_batch = 64
sf_iters = 3000
sf_batch = 32
eval_videos = 256
compile = True
