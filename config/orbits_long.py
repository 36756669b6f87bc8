# config/orbits_top.py with the teacher trained 10,000 steps instead of 6,000 and the paper's 200 DMD iterations: the
# best recipe measured on 2 cores, and the one whose students reach the 90% all-correct the project asks for on some
# teachers and not on others. About 40 minutes on a 2-core Intel Xeon (41 min 01 s with --seed=1: teacher 2,074 s,
# ODE pairs 89, ODE init 195, Self Forcing 67; 41 min 46 s with --seed=2).
# On evaluate.py's 512 held-out videos, teacher / ODE init / Self Forcing: 87.3 / 86.9 / 88.3% (seed 1337, its stages
# run one at a time), 92.2 / 90.4 / 92.0% (--seed=1), 84.6 / 77.3 / 77.5% (--seed=2):
# 88.0 / 84.9 / 85.9% over the three; 4x drift 58.5%, 63.7% with the first chunk kept (sink, below) (README,
# "`config/orbits_long.py`, three teachers").
out_dir = "out/orbits_long"
orbit_start_deg = 30.0       # orbits start near the top of their circle: "clockwise" first goes right (orbits_top)
teacher_iters = 10000        # 6,000 steps: teacher 85.9% on 512 and students 4.7 points below it (orbits_top)
eval_interval = 1000
ode_iters = 480              # three times the tiny run's, as orbits_top: 4 points more for its students on 512
dmd_stream = 0.5             # half of DMD's videos judged in the teacher's streaming layout (orbits_top)
sf_iters = 200               # from an ODE init close to its teacher, 600 iterations trade shape for motion and lose
                             # (seed 1337: 83.4 against 88.3% on 512); from one far below it they win (--seed=2: 80.5
                             # against 77.5%), but which it is shows only once the ODE init is measured
sink = 3                     # past the training length the cache keeps the first chunk (and the last 6 frames): where
                             # and which way each orbit began. Over the three runs above, 4x drift on 512 58.5 -> 63.7%
                             # (orbits 28.9 -> 51.4%, straight lines 72.4 -> 69.5%); in the tiny run's world, whose
                             # orbits start anywhere, it costs 8.5 points: no default (README, "The first chunk kept")
