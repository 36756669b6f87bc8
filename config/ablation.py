# The ablation's rows (ablation.py runs train.py with this file, then --out_dir, --method, --chunk, --seed per row):
# the tiny run's settings (train.py's defaults), plus what the comparison needs.
teacher_chunk = 3      # every row shares the chunk-wise teacher and its ODE pairs, frame-wise rows too
eval_interval = 100    # oracle checks along the last stage: the quality-against-training-time curves
                       # (ablation.py sets each diffusion row's diffusion_iters, for equal training time)
eval_videos = 32       # per check (ablation.py then evaluates each finished row on 64 held-out videos)
