"""
The toy video world: coloured shapes that move, full-frame colour transitions, the prompts that
describe them, a vectorised torch renderer, a Dataset, and an ORACLE that reads the prompt back
from the frames.

Why a toy world? Self Forcing is about how an autoregressive video model is trained, not about
photorealism. Procedural videos are free, infinite, exactly reproducible from (prompt, seed), and,
most importantly, checkable: no pretrained video judge can be downloaded here, so `read_video`
(the oracle) is the project's primary quality metric. It must read ground truth 100% correctly,
and it must say "none" when a generated video holds no single coherent object.

    video = make_video("A red circle moving from left to right", num_frames=12, resolution=32, seed=0)
    video.shape                    # (F, C, H, W) = (12, 3, 32, 32), float32 in [-1, 1], black = -1
    read_video(video)              # {'scene': 'object', 'colour': 'red', 'shape': 'circle', 'motion': 'left_to_right'}

Coordinates: x grows to the right, y grows DOWN (image rows). Pixel (row i, column j) has its centre
at (x, y) = (j + 0.5, i + 0.5). The world is a torus: whatever leaves on the right re-enters on the
left, so a video of any length (4x the training length too) stays a valid video of its prompt.
"""
import difflib
import functools
import math

import torch
import torch.nn.functional as F

# -----------------------------------------------------------------------------
# The world: colours, shapes, motions

COLOURS = {  # name -> (r, g, b) in [0, 1]; every colour has max channel 1, so it stands out from black
    "red":     (1.0, 0.0, 0.0),
    "green":   (0.0, 1.0, 0.0),
    "blue":    (0.0, 0.0, 1.0),
    "yellow":  (1.0, 1.0, 0.0),
    "cyan":    (0.0, 1.0, 1.0),
    "magenta": (1.0, 0.0, 1.0),
    "white":   (1.0, 1.0, 1.0),
    "orange":  (1.0, 0.5, 0.0),
}
SHAPES = ["circle", "square", "triangle"]
# clockwise / counter_clockwise: the object ORBITS a point (anywhere in the frame). A circle spinning in place
# would look exactly like a still circle, and DESIGN asks that every attribute a prompt names be visible.
MOTIONS = ["left_to_right", "right_to_left", "top_to_bottom", "bottom_to_top", "clockwise", "counter_clockwise"]
LINEAR_DIRECTIONS = {  # motion -> unit (dx, dy) in image coordinates (y points down)
    "left_to_right": (1.0, 0.0), "right_to_left": (-1.0, 0.0),
    "top_to_bottom": (0.0, 1.0), "bottom_to_top": (0.0, -1.0),
}
_PALETTE = torch.tensor(list(COLOURS.values()))                                # (8, 3)

# Sizes and speeds are fractions of the resolution, so a 64x64 video is a 32x32 one drawn finer.
OBJECT_RADIUS = (0.18, 0.20)     # an object's size before SHAPE_SCALE; big enough to read at 32x32 with patch 8
SHAPE_SCALE = {"circle": 0.85, "square": 1.2, "triangle": 1.1}  # circle radius / square half-side / triangle
                                 # size are this times the radius: each shape its own size, areas about 90 / 210 /
                                 # 140 pixels at 32x32. A size is seen at high noise, where a blob's outline is not:
                                 # the words can set it early, as they set the colour, and the outline follows
                                 # from it. With one size for all (0.17-0.21, similar areas) a 3,000-step teacher drew
                                 # every square round (0 of 48 squares; README, "Each shape its own size").
TRIANGLE_INRADIUS = 0.75         # triangle inradius as a fraction of its size
SPEED = (1.5 / 32, 2.5 / 32)     # linear speed per frame: 1.5-2.5 px/frame at 32 px
# The world is a torus: objects start ANYWHERE and wrap around the edges, and orbits circle a random point.
# So where an object is says nothing about which frame it is in, and a model whose positions are relative
# (RoPE) must learn motion as "each frame a step further than the last", which also holds past the
# training length. (Keeping objects inside the frame ties position to the frame index instead: a left-to-right
# object is on the left in frame 0. A model that cannot see the absolute frame index then collapsed its
# samples to the frame centre and barely moved them: teacher motion 10-22% after 3,000-8,000 steps.)
ORBIT_RADIUS = (0.18, 0.24)      # orbit radius around the orbit's centre
TRAIL = (0.3, 0.2, 0.1)          # brightness of the faint copies where the object was 1, 2, 3 frames before: a
                                 # motion trail, so each frame shows which way the object goes. Without it the
                                 # direction lives only in how frames relate: a model could not tie the words
                                 # "left to right" to anything it sees in one frame, and after 2,000 steps the
                                 # prompt's direction changed its predictions by nothing measurable. All copies
                                 # stay below FG_THRESHOLD, so the oracle reads the body alone.
ORBIT_SPEED_DEG = (15.0, 30.0)   # angular speed per frame
ORBIT_START_DEG = 180.0          # an orbit starts within this many degrees of the top of its circle; 180: at any
                                 # angle (the default world). Started anywhere, the mean of all "clockwise" videos
                                 # is the mean of all "counter-clockwise" ones, so a denoiser learns the word only
                                 # late in denoising; 30 makes clockwise first go right and counter-clockwise left
                                 # (train.py's orbit_start_deg sets this; config/orbits_top.py, README)
TRANSITION_FRAMES = 12           # a colour transition reaches its target colour by this frame, then holds it
MAX_TEXT_LEN = 12                # token slots per prompt (the longest prompt has 8 words)
EVAL_SEED_OFFSET = 10**9         # training seeds are < this; held-out evaluation seeds are >= this

# -----------------------------------------------------------------------------
# Prompts: a tiny grammar over a fixed vocabulary
#
#   prompt     := ["a" | "an"] colour shape "moving" motion
#               | ["a" | "an"] "color" "gradient" "transitioning" "from" colour "to" colour
#   motion     := "from" ("left" "to" "right" | "right" "to" "left" | "top" "to" "bottom" | "bottom" "to" "top")
#               | "clockwise" | "counter-clockwise"

MOTION_PHRASES = {
    "left_to_right": "from left to right", "right_to_left": "from right to left",
    "top_to_bottom": "from top to bottom", "bottom_to_top": "from bottom to top",
    "clockwise": "clockwise", "counter_clockwise": "counter-clockwise",
}
VOCAB = (["<pad>", "a", "an"] + list(COLOURS) + SHAPES
         + ["moving", "from", "to", "left", "right", "top", "bottom", "clockwise", "counter-clockwise"]
         + ["color", "gradient", "transitioning"])
SYNONYMS = {"colour": "color", "counterclockwise": "counter-clockwise",
            "anticlockwise": "counter-clockwise", "anti-clockwise": "counter-clockwise"}
WORD_TO_ID = {w: i for i, w in enumerate(VOCAB)}
GRAMMAR = ('"[A|An] <colour> <shape> moving from left to right|right to left|top to bottom|bottom to top", '
           '"[A|An] <colour> <shape> moving clockwise|counter-clockwise", or '
           '"Color gradient transitioning from <colour> to <other colour>"; '
           f"colours: {', '.join(COLOURS)}; shapes: {', '.join(SHAPES)}")


MAX_PROMPT_CHARS = 300  # far above the longest prompt; keeps the error message about a pasted essay one short line


def _check_text(text):
    if not isinstance(text, str):
        raise TypeError(f"a prompt must be a str, got {type(text).__name__}")
    if len(text) > MAX_PROMPT_CHARS:
        raise ValueError(f"prompt of {len(text)} characters is longer than {MAX_PROMPT_CHARS}: {text[:40]!r}...; "
                         f"write one like {GRAMMAR}")


def _words(text):
    """Lower-case, drop a final full stop, split on spaces, map synonyms; unknown words raise."""
    _check_text(text)
    words = [SYNONYMS.get(w, w) for w in text.lower().strip().rstrip(".").split()]
    for w in words:
        if w not in WORD_TO_ID or w == "<pad>":
            close = difflib.get_close_matches(w, VOCAB[1:] + list(SYNONYMS), n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise ValueError(f"unknown word '{w}' in prompt {text!r}; {hint}the vocabulary is: {' '.join(VOCAB[1:])}")
    return words


@functools.lru_cache(maxsize=4096)  # the renderer parses every prompt of every batch: parse each text once
def _parse(text):
    words = _words(text)
    if not words:
        raise ValueError(f"empty prompt; write one like {GRAMMAR}")
    bad = ValueError(f"prompt {text!r} does not follow the grammar: {GRAMMAR}")
    if words[0] in ("a", "an"):
        words = words[1:]
    if words[:3] == ["color", "gradient", "transitioning"]:
        if len(words) != 7 or words[3] != "from" or words[5] != "to" or not {words[4], words[6]} <= set(COLOURS):
            raise bad
        if words[4] == words[6]:
            raise ValueError(f"prompt {text!r}: a colour transition needs two different colours")
        return (("scene", "transition"), ("colour_from", words[4]), ("colour_to", words[6]))
    if len(words) < 4 or words[0] not in COLOURS or words[1] not in SHAPES or words[2] != "moving":
        raise bad
    phrase = " ".join(words[3:])
    motion = [m for m, p in MOTION_PHRASES.items() if p == phrase]
    if not motion:
        raise bad
    return (("scene", "object"), ("colour", words[0]), ("shape", words[1]), ("motion", motion[0]))


def parse_prompt(text):
    """Prompt text -> its attributes, e.g.
        'A red circle moving clockwise'
            -> {'scene': 'object', 'colour': 'red', 'shape': 'circle', 'motion': 'clockwise'}
        'Color gradient transitioning from blue to red'
            -> {'scene': 'transition', 'colour_from': 'blue', 'colour_to': 'red'}
    Unknown words and wrong word orders raise ValueError with a message that says what to write; a non-str TypeError."""
    _check_text(text)  # before the cache, which cannot hash a list
    return dict(_parse(text))


def prompt_from_attributes(attrs):
    """The inverse of parse_prompt: the canonical spelling of a prompt (also used to print oracle readings)."""
    if attrs["scene"] == "transition":
        return f"Color gradient transitioning from {attrs['colour_from']} to {attrs['colour_to']}"
    article = "An" if attrs["colour"][0] in "aeiou" else "A"
    return f"{article} {attrs['colour']} {attrs['shape']} moving {MOTION_PHRASES[attrs['motion']]}"


ALL_PROMPTS = ([prompt_from_attributes(dict(scene="object", colour=c, shape=s, motion=m))
                for c in COLOURS for s in SHAPES for m in MOTIONS]
               + [prompt_from_attributes(dict(scene="transition", colour_from=a, colour_to=b))
                  for a in COLOURS for b in COLOURS if a != b])                # 144 object + 56 transition prompts


def tokenize(prompts, max_len=MAX_TEXT_LEN):
    """list of B prompts -> LongTensor (B, max_len) of word ids, 0-padded. Every prompt is parsed and
    re-spelled canonically first, so 'an orange square moving anticlockwise.' and 'An orange square moving
    counter-clockwise' give the same tokens. The empty prompt "" is the all-pad row (the CFG 'null' prompt)."""
    if isinstance(prompts, str):
        prompts = [prompts]
    tokens = torch.zeros(len(prompts), max_len, dtype=torch.long)               # (B, max_len)
    for i, text in enumerate(prompts):
        if text.strip() == "":
            continue
        ids = [WORD_TO_ID[w] for w in _words(prompt_from_attributes(parse_prompt(text)))]
        assert len(ids) <= max_len, f"prompt {text!r} has {len(ids)} words, more than max_len={max_len}"
        tokens[i, :len(ids)] = torch.tensor(ids)
    return tokens


# -----------------------------------------------------------------------------
# The renderer: every pixel of every frame of every video at once
#
# Each shape is a signed distance sd(dx, dy) from the object centre (negative inside). A pixel's coverage
# is clamp(0.5 - sd, 0, 1): 1 inside, 0 outside, a linear ramp over the 1-pixel band across the edge.
# That is cheap anti-aliasing, and it makes sub-pixel motion visible, which a model needs to learn speed.

def orbit_start_ok(deg):
    """The one rule for ORBIT_START_DEG, checked where a value comes in (train.py's config, a checkpoint in
    sample.load_model) and before rendering: a number (not a bool) in [0, 180]."""
    return isinstance(deg, (int, float)) and not isinstance(deg, bool) and 0 <= deg <= 180


def orbits_start_anywhere():
    """Is this the default world, whose orbits start at any angle? (ORBIT_START_DEG 180; less: near the top)"""
    return ORBIT_START_DEG >= 180


def _orbit_start(u):
    """An orbit's start angle from a uniform draw u in [0, 1): anywhere (ORBIT_START_DEG 180, drawn as 2 pi u, as
    the default world always was), else within ORBIT_START_DEG of the top, which is angle -pi/2 (y points down)."""
    assert orbit_start_ok(ORBIT_START_DEG), f"ORBIT_START_DEG must lie in [0, 180], got {ORBIT_START_DEG}"
    if orbits_start_anywhere():
        return 2 * math.pi * u
    return -math.pi / 2 + math.radians(ORBIT_START_DEG) * (2 * u - 1)


def _sample_params(prompt, seed):
    """The random parameters of one video, drawn from a generator seeded with `seed` alone: a video's
    frames are a function of (prompt, seed), independent of the batch it is rendered in and of num_frames.
    Lengths are in units of the resolution, angles in radians, speeds per frame."""
    u = torch.rand(7, generator=torch.Generator().manual_seed(int(seed)), dtype=torch.float64).tolist()
    lerp = lambda lo_hi, v: lo_hi[0] + (lo_hi[1] - lo_hi[0]) * v
    a = parse_prompt(prompt)
    p = dict(transition=0.0, reach=1.0, shape=0, radius=lerp(OBJECT_RADIUS, u[0]),
             x0=u[1], y0=u[2], vx=0.0, vy=0.0,                     # straight line from anywhere on the torus
             orbit=0.0, phase=_orbit_start(u[3]), omega=0.0)       # or an orbit round (x0, y0)
    if a["scene"] == "transition":
        # colour_from at frame 0, colour_to from frame `reach` (at most TRANSITION_FRAMES - 1) on
        return dict(p, transition=1.0, colour=COLOURS[a["colour_from"]], colour_to=COLOURS[a["colour_to"]],
                    reach=(TRANSITION_FRAMES - 1) * lerp((2 / 3, 1.0), u[4]))
    p.update(colour=COLOURS[a["colour"]], colour_to=COLOURS[a["colour"]], shape=SHAPES.index(a["shape"]),
             radius=p["radius"] * SHAPE_SCALE[a["shape"]])
    if a["motion"] in LINEAR_DIRECTIONS:
        dx, dy = LINEAR_DIRECTIONS[a["motion"]]
        speed = lerp(SPEED, u[4])
        return dict(p, vx=dx * speed, vy=dy * speed)
    # y points down, so an INCREASING angle atan2(y - cy, x - cx) goes right -> down -> left -> up:
    # clockwise on screen. Counter-clockwise is a negative angular speed. (x0, y0) is the orbit's centre.
    sign = 1.0 if a["motion"] == "clockwise" else -1.0
    return dict(p, orbit=lerp(ORBIT_RADIUS, u[5]), omega=sign * math.radians(lerp(ORBIT_SPEED_DEG, u[6])))


def torus_delta(d, size):
    """Offsets d (any shape) on a circle of `size` pixels -> the shortest signed way round it, in [-size/2, size/2)."""
    return torch.remainder(d + size / 2, size) - size / 2


def _coverage(P, t, resolution):
    """How much of every pixel the object's body covers at (possibly fractional or negative) times t (1, F)."""
    R = float(resolution)
    # object centre per frame, in pixels: straight lines, or orbits around (x0, y0)
    ang = P["phase"][:, None] + P["omega"][:, None] * t                         # (B, F) orbit angle
    is_orbit = (P["orbit"] > 0)[:, None]                                        # (B, 1)
    cx = P["x0"][:, None] + torch.where(is_orbit, P["orbit"][:, None] * torch.cos(ang), P["vx"][:, None] * t)  # (B, F)
    cy = P["y0"][:, None] + torch.where(is_orbit, P["orbit"][:, None] * torch.sin(ang), P["vy"][:, None] * t)  # (B, F)
    cx, cy = cx * R, cy * R                                                     # in pixels
    # toroidal offsets from the centre to every pixel centre, wrapped into [-R/2, R/2)
    pix = torch.arange(resolution, dtype=torch.float32) + 0.5                   # (W,) pixel centres
    dx = torus_delta(pix[None, None, None, :] - cx[:, :, None, None], R)     # (B, F, 1, W)
    dy = torus_delta(pix[None, None, :, None] - cy[:, :, None, None], R)     # (B, F, H, 1)
    r = (P["radius"] * R)[:, None, None, None]                                  # (B, 1, 1, 1) incl. SHAPE_SCALE
    # all three distances for every video (cheaper than splitting the batch by shape), then pick per video
    sd_circle = torch.sqrt(dx**2 + dy**2) - r                                   # (B, F, H, W)
    sd_square = torch.maximum(dx.abs(), dy.abs()) - r                           # axis-aligned: Chebyshev distance
    # upward triangle: inside all three half-planes; outward normals point down, up-left and up-right
    s3 = math.sqrt(3) / 2
    sd_triangle = torch.maximum(dy, torch.maximum(-s3 * dx - 0.5 * dy, s3 * dx - 0.5 * dy)) - TRIANGLE_INRADIUS * r
    shape = P["shape"][:, None, None, None]                                     # (B, 1, 1, 1)
    sd = torch.where(shape == 0, sd_circle, torch.where(shape == 1, sd_square, sd_triangle))
    return (0.5 - sd).clamp(0, 1)                                              # (B, F, H, W)


def render_batch(prompts, seeds, num_frames, resolution):
    """B prompts and B seeds -> videos (B, F, 3, H, W), float32 in [-1, 1]. No loop over frames or pixels."""
    assert len(prompts) == len(seeds) > 0, f"need as many seeds as prompts (>= 1), got {len(prompts)} and {len(seeds)}"
    assert num_frames >= 1 and resolution >= 1, f"need num_frames, resolution >= 1, got {num_frames}, {resolution}"
    params = [_sample_params(p, s) for p, s in zip(prompts, seeds)]
    P = {k: torch.tensor([q[k] for q in params], dtype=torch.float32) for k in params[0]}  # each (B,) or (B, 3)
    t = torch.arange(num_frames, dtype=torch.float32)[None, :]                  # (1, F) frame index
    # the object's body at frame t, plus a faint trail: copies at the places it was 1, 2, 3 frames earlier
    coverage = _coverage(P, t, resolution)                                      # (B, F, H, W) in [0, 1]
    for k, b in enumerate(TRAIL, start=1):
        coverage = torch.maximum(coverage, b * _coverage(P, t - k, resolution))
    # colour per frame: constant for objects, A -> B then hold for transitions
    progress = (t / P["reach"][:, None]).clamp(0, 1)                            # (B, F)
    colour = P["colour"][:, None] + progress[..., None] * (P["colour_to"] - P["colour"])[:, None]  # (B, F, 3)
    alpha = torch.where(P["transition"][:, None, None, None] > 0, torch.ones_like(coverage), coverage)
    video = colour[:, :, :, None, None] * alpha[:, :, None]                     # (B, F, 3, H, W) in [0, 1]
    return video * 2 - 1


def make_video(prompt, num_frames=12, resolution=32, seed=0):
    """One video (F, 3, H, W) in [-1, 1]; the same (prompt, seed) always gives the same frames."""
    return render_batch([prompt], [seed], num_frames, resolution)[0]


# -----------------------------------------------------------------------------
# Sampling prompts and seeds; the Dataset

def _mix(*ints):
    """A deterministic 64-bit integer hash (splitmix64 steps): (dataset seed, index) -> a sample's seed."""
    h = 0x9E3779B97F4A7C15
    for v in ints:
        h = (h ^ (int(v) & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        h = (h ^ (h >> 31)) * 0x94D049BB133111EB & 0xFFFFFFFFFFFFFFFF
    return h ^ (h >> 29)


def sample_prompts_and_seeds(n, generator, prompts=None):
    """n training (prompt, seed) pairs: prompts uniform over `prompts` (default ALL_PROMPTS),
    seeds uniform below EVAL_SEED_OFFSET (the held-out seeds are never drawn)."""
    prompts = ALL_PROMPTS if prompts is None else list(prompts)
    idx = torch.randint(len(prompts), (n,), generator=generator).tolist()
    seeds = torch.randint(EVAL_SEED_OFFSET, (n,), generator=generator).tolist()
    return [prompts[i] for i in idx], seeds


def sample_batch(batch_size, num_frames, resolution, generator, prompts=None):
    """On-the-fly training data: (videos (B, F, 3, H, W), prompts, seeds). Cheaper than a DataLoader."""
    batch_prompts, seeds = sample_prompts_and_seeds(batch_size, generator, prompts)
    return render_batch(batch_prompts, seeds, num_frames, resolution), batch_prompts, seeds


def eval_set(n, num_frames=None, resolution=None, prompts=None):
    """The held-out evaluation list: n (prompt, seed) pairs, deterministic, seeds >= EVAL_SEED_OFFSET (never
    seen in training). Prompts cycle through a fixed shuffle of `prompts`, so every prompt appears
    floor(n/P) or ceil(n/P) times and a small n still spreads over colours, shapes and motions.
    If num_frames is given and shorter than TRANSITION_FRAMES, transition prompts are left out: their
    target colour would not be reached, so they could not be judged. The list does not depend on resolution
    (accepted so the call reads like render_batch)."""
    prompts = ALL_PROMPTS if prompts is None else list(prompts)
    if num_frames is not None and num_frames < TRANSITION_FRAMES:
        prompts = [p for p in prompts if parse_prompt(p)["scene"] != "transition"]
    assert prompts, "no prompts left to evaluate"
    order = torch.randperm(len(prompts), generator=torch.Generator().manual_seed(0)).tolist()
    return [prompts[order[i % len(prompts)]] for i in range(n)], [EVAL_SEED_OFFSET + i for i in range(n)]


class ToyDataset(torch.utils.data.Dataset):
    """(video (F, 3, H, W), prompt) pairs. Sample i has a prompt and a seed derived from (seed, i), so item i is
    the same video every time. num_samples=None is the infinite on-the-fly mode: any index i >= 0 is valid and
    iterating never ends. held_out=True draws seeds >= EVAL_SEED_OFFSET (evaluation) instead of below it."""

    def __init__(self, num_samples=None, num_frames=12, resolution=32, seed=0, prompts=None, held_out=False):
        assert num_samples is None or num_samples >= 0, f"num_samples must be None or >= 0, got {num_samples}"
        self.num_samples, self.num_frames, self.resolution, self.seed = num_samples, num_frames, resolution, seed
        self.prompts = ALL_PROMPTS if prompts is None else list(prompts)
        self.offset = EVAL_SEED_OFFSET if held_out else 0

    def __len__(self):
        if self.num_samples is None:
            raise TypeError("an infinite ToyDataset (num_samples=None) has no length: iterate it or use sample_batch")
        return self.num_samples

    def prompt_and_seed(self, i):
        if not (0 <= i and (self.num_samples is None or i < self.num_samples)):
            raise IndexError(f"index {i} out of range for a ToyDataset of {self.num_samples} samples")
        h = _mix(self.seed, i)
        return self.prompts[h % len(self.prompts)], self.offset + (h >> 16) % EVAL_SEED_OFFSET

    def __getitem__(self, i):
        prompt, seed = self.prompt_and_seed(i)
        return make_video(prompt, self.num_frames, self.resolution, seed), prompt

    def get_batch(self, indices):
        """Many items rendered in one vectorised call: (videos (B, F, 3, H, W), prompts)."""
        prompts, seeds = zip(*[self.prompt_and_seed(i) for i in indices])
        return render_batch(list(prompts), list(seeds), self.num_frames, self.resolution), list(prompts)

    def __iter__(self):
        i = 0
        while self.num_samples is None or i < self.num_samples:
            yield self[i]
            i += 1


# -----------------------------------------------------------------------------
# The oracle: read the prompt back from the frames alone
#
# It is the project's judge, so it must be exact on ground truth and honest on generated videos: a frame
# counts as an object frame only if its foreground is ONE connected blob of a plausible size. Otherwise a
# half-trained model's scattered blobs would be read as some shape (they used to read as triangles).
# Every threshold below sits far from what ground truth produces and is a named constant you can inspect.

FG_THRESHOLD = 0.35              # a pixel is foreground if its brightest channel (in [0, 1]) exceeds this
COVER_RAMP = (0.2, 0.6)          # brightness (fraction of the object's peak) read as 0 and as full coverage
FULL_FRAME_FG = 0.9              # a transition frame: at least this fraction of the pixels is foreground ...
FULL_FRAME_SPREAD = 0.15         # ... and the mean |pixel - frame mean colour| is below this (pure noise: 0.25+)
BLOB_SHARE = 0.9                 # an object frame: the largest blob holds >= this share of the foreground ...
BLOB_AREA = (0.01, 0.4)          # ... and covers this range of fractions of the frame
QUORUM = 0.75                    # a whole video needs this fraction of its frames to agree on the scene
MIN_SPEED = 0.3 / 32             # slower than this (fraction of the resolution per frame) reads as "static"
TURN_DEG = (7.5, 90.0)           # motion turning steadily by this much per frame is an orbit (ours: 15-30;
                                 # going back and forth is a 180-degree turn, not an orbit)
SQUARE_FILL = 0.9                # area / bounding-box area: square 1, circle pi/4 = 0.785, triangle 1/2 ...
TRIANGLE_FILL = 0.66             # ... so these two cut halfway between them
TRIANGLE_DROP = 0.08             # an upward triangle's mass sits 1/6 of its height below its box centre (others: 0)
SEGMENT_TOL = 0.15               # a transition frame's mean colour is this close to a blend of A and B ...
GAIN = (0.7, 1.3)                # ... of about the right brightness ...
PROGRESS_TOL = 0.05              # ... and its progress from A to B never goes back by more than this


def _largest_blob(mask):
    """mask (N, H, W) bool -> (N, H, W) bool mask of each frame's largest 8-connected blob on the torus.
    Label propagation: every foreground pixel starts with its own id and repeatedly takes the largest id
    among its neighbours (a 3x3 max-pool with circular padding, because the world wraps around) and the id
    held by the pixel its id points to (pointer jumping, which makes it converge in a few steps)."""
    N, H, W = mask.shape
    m = mask.float()
    ids = torch.arange(1, H * W + 1, dtype=torch.float32).view(1, H, W) * m    # (N, H, W), 0 = background
    for _ in range(H * W):
        pooled = F.max_pool2d(F.pad(ids[:, None], (1, 1, 1, 1), mode="circular"), 3, stride=1)[:, 0] * m
        flat = pooled.view(N, H * W)                                            # (N, H*W)
        jumped = torch.gather(flat, 1, (flat.long() - 1).clamp(min=0)).view(N, H, W) * m
        new = torch.maximum(pooled, jumped)
        if torch.equal(new, ids):
            break
        ids = new
    frame = torch.arange(N)[:, None] * (H * W + 1)                              # (N, 1) offset per frame
    sizes = torch.bincount((frame + ids.view(N, -1).long()).view(-1), minlength=N * (H * W + 1))
    sizes = sizes.view(N, H * W + 1)                                            # (N, H*W + 1) pixels per label
    sizes[:, 0] = 0                                                             # label 0 is the background
    return (ids == sizes.argmax(1).view(N, 1, 1).float()) & mask                # empty frame -> empty blob


def _unit(rgb):
    """Scale a colour so its brightest channel is 1, like every palette colour: a dim red is still red."""
    return rgb / rgb.max().clamp(min=1e-6)


def _nearest_colour(rgb):
    """(3,) colour in [0, 1] -> the name of the nearest palette colour."""
    return list(COLOURS)[int(((_PALETTE - rgb) ** 2).sum(1).argmin())]


def _circular_centre(weight):
    """weight (F, H, W) -> the centre (cx, cy) of each frame in pixels, as CIRCULAR means: each coordinate is an
    angle on the torus, and the centre is the direction of the weighted sum of unit vectors. A plain mean of a
    blob straddling the edge would land halfway across the frame."""
    _, H, W = weight.shape
    phase_x = 2 * math.pi * (torch.arange(W) + 0.5) / W                         # (W,)
    phase_y = 2 * math.pi * (torch.arange(H) + 0.5) / H                         # (H,)
    wx, wy = weight.sum(1), weight.sum(2)                                       # (F, W), (F, H) marginals
    cx = torch.atan2((wx * phase_x.sin()).sum(1), (wx * phase_x.cos()).sum(1)) * W / (2 * math.pi)  # (F,)
    cy = torch.atan2((wy * phase_y.sin()).sum(1), (wy * phase_y.cos()).sum(1)) * H / (2 * math.pi)  # (F,)
    return cx, cy


def _shape_measures(cover, cy):
    """cover (F, H, W) soft coverage of the blob, cy (F,) its centre row -> (fill, drop), each (F,):
    fill = area / bounding-box area (circle pi/4, square 1, triangle 1/2) and drop = how far the centre of
    mass sits below the centre of the box, in box heights (upward triangle 1/6, circle and square 0).
    Measured on soft coverage they are sub-pixel accurate: on a binary mask at 32x32 a circle's fill jumps
    between 0.69 and 0.90 as it moves; on `cover` it stays within 0.73-0.84."""
    H = cover.shape[1]
    dy = torus_delta(torch.arange(H) + 0.5 - cy[:, None], H)                   # (F, H) rows from the centre
    cols, rows = cover.amax(1), cover.amax(2)                                   # (F, W), (F, H) box profiles
    box_w, box_h = cols.sum(1).clamp(min=1e-6), rows.sum(1).clamp(min=1e-6)     # (F,), (F,) box size in pixels
    mass = cover.sum((1, 2)).clamp(min=1e-6)                                    # (F,) soft area
    mass_y = (cover.sum(2) * dy).sum(1) / mass                                  # (F,) centre of mass, in rows
    box_y = (rows * dy).sum(1) / box_h                                          # (F,) centre of the rows spanned
    return mass / (box_w * box_h), (mass_y - box_y) / box_h


def _frame_features(video):
    """Everything the oracle needs, per frame, computed once for the whole video (F, 3, H, W) in [-1, 1]."""
    assert video.dim() == 4 and video.shape[1] == 3, f"expected a video (F, 3, H, W), got {tuple(video.shape)}"
    H, W = video.shape[2:]
    assert H == W, f"the toy world is square, got frames of {H}x{W}"
    rgb = ((video.detach().float().cpu() + 1) / 2).clamp(0, 1)                 # (F, 3, H, W) in [0, 1]
    bright = rgb.amax(1)                                                        # (F, H, W) brightest channel
    fg = bright > FG_THRESHOLD                                                  # (F, H, W)
    mean = rgb.mean((2, 3))                                                     # (F, 3) frame mean colour
    spread = (rgb - mean[:, :, None, None]).abs().mean((1, 2, 3))               # (F,)
    blob = _largest_blob(fg)                                                    # (F, H, W)
    area = blob.sum((1, 2)).float()                                             # (F,)
    # isolated specks (at most 2 foreground pixels in their 3x3 neighbourhood) are noise, not a second object
    crowd = F.avg_pool2d(F.pad(fg[:, None].float(), (1, 1, 1, 1), mode="circular"), 3, stride=1)[:, 0] * 9
    share = area / (fg & (crowd > 2.5)).sum((1, 2)).clamp(min=1)                # (F,) blob's share of the foreground
    is_object = (share >= BLOB_SHARE) & (area >= BLOB_AREA[0] * H * W) & (area <= BLOB_AREA[1] * H * W)
    # the blob plus the one-pixel rim around it: the anti-aliased edge belongs to the object too, and cutting it
    # at the threshold would make the centre and the shape measures jitter by a fraction of a pixel per frame
    near = F.max_pool2d(F.pad(blob[:, None].float(), (1, 1, 1, 1), mode="circular"), 3, stride=1)[:, 0]
    # Coverage ramps from 0 at COVER_RAMP[0] to 1 at COVER_RAMP[1] of the blob's peak brightness: faint noise
    # around the object does not widen its box and noise inside it does not thin it, while the anti-aliased
    # edge still moves smoothly with sub-pixel motion
    peak = (bright * blob).amax((1, 2), keepdim=True)                           # (F, 1, 1)
    lo, hi = COVER_RAMP[0] * peak, COVER_RAMP[1] * peak
    cover = ((bright - lo) / (hi - lo).clamp(min=1e-6)).clamp(0, 1) * near      # (F, H, W) in [0, 1]
    cx, cy = _circular_centre(bright * near)                                    # (F,), (F,) from the raw AA mass
    fill, drop = _shape_measures(cover, cy)                                     # (F,), (F,)
    colour_sum = (rgb * cover[:, None]).sum((2, 3))                             # (F, 3) brighter pixels count more
    is_full = (fg.float().mean((1, 2)) >= FULL_FRAME_FG) & (spread < FULL_FRAME_SPREAD)  # (F,) transition-like
    return dict(is_object=is_object, is_full=is_full, mean=mean, cx=cx, cy=cy, fill=fill, drop=drop,
                colour_sum=colour_sum, res=float(W))


def _read_object(f, idx):
    """colour, shape and motion of the blob in frames idx (a list of consecutive frame indices)."""
    good = [i for i in idx if f["is_object"][i]]
    colour = _unit(f["colour_sum"][good].sum(0))                                # (3,) brightness-free: hue decides
    fill, drop = f["fill"][good].median(), f["drop"][good].median()
    if fill >= SQUARE_FILL:
        shape = "square"
    elif fill < TRIANGLE_FILL and drop > TRIANGLE_DROP:
        shape = "triangle"
    elif fill >= TRIANGLE_FILL and abs(drop) <= TRIANGLE_DROP:
        shape = "circle"
    else:
        shape = "unknown"                                                       # a blob, but none of the three
    return dict(scene="object", colour=_nearest_colour(colour), shape=shape, motion=_read_motion(f, good))


def _read_motion(f, good):
    """Motion from the blob's centre: wrap-aware steps between consecutive good frames. A path whose
    direction keeps turning is an orbit; its turning sign says which way (y down: positive = clockwise).
    Turning is measured between successive steps, so it does not matter where the orbit's centre is."""
    pairs = [(i, j) for i, j in zip(good, good[1:]) if j == i + 1]              # good is sorted
    if not pairs:
        return "static"
    R = f["res"]
    a, b = torch.tensor(pairs).T                                                # (P,), (P,)
    step = torch.stack([f["cx"][b] - f["cx"][a], f["cy"][b] - f["cy"][a]], 1)   # (P, 2)
    step = torus_delta(step, R)                                                 # shortest way round the torus
    if step.norm(dim=1).median() < MIN_SPEED * R:
        return "static"
    # signed angle from each step to the next (cross and dot product), for steps that share a frame
    linked = torch.tensor([p[1] == q[0] for p, q in zip(pairs, pairs[1:])], dtype=torch.bool)  # (P-1,)
    s0, s1 = step[:-1], step[1:]                                                # (P-1, 2) each
    turns = torch.atan2(s0[:, 0] * s1[:, 1] - s0[:, 1] * s1[:, 0], (s0 * s1).sum(1))[linked]  # (T,) radians
    if len(turns):
        turn = turns.median()
        steady = (turns.sign() == turn.sign()) & (turns.abs() < math.radians(TURN_DEG[1]))  # same way, no U-turns
        if math.radians(TURN_DEG[0]) < turn.abs() < math.radians(TURN_DEG[1]) and steady.float().mean() >= QUORUM:
            return "clockwise" if turn > 0 else "counter_clockwise"
    # a straight line: the dominant axis and sign of the median step, which most steps must agree with
    sx, sy = step[:, 0].median().item(), step[:, 1].median().item()
    if abs(sx) >= abs(sy):
        motion = "left_to_right" if sx > 0 else "right_to_left"
    else:
        motion = "top_to_bottom" if sy > 0 else "bottom_to_top"
    along = step @ torch.tensor(LINEAR_DIRECTIONS[motion])                      # (P,) progress of each step
    return motion if (along > 0).float().mean() >= QUORUM else "erratic"


def _blend_fit(f, a, b):
    """Per frame: is its mean colour a blend of palette colours a and b, and how far along from a to b is it?
    Each mean colour c is fitted as c = alpha * A + beta * B (least squares). A frame of the transition has a
    small residual, alpha, beta >= 0 and a brightness alpha + beta near 1 (a slightly dim video still counts,
    magenta = red + blue does not); its progress is beta / (alpha + beta): 0 at A, 1 at B.
    Returns (on_blend (F,) bool, forward (F - 1,) bool: progress did not go back from frame i to i + 1)."""
    c = f["mean"]                                                               # (F, 3)
    if a == b:                                                                  # no transition: nothing fits
        return torch.zeros(len(c), dtype=torch.bool), torch.zeros(len(c) - 1, dtype=torch.bool)
    M = torch.tensor([COLOURS[a], COLOURS[b]]).T                                # (3, 2) columns A and B
    ab = torch.linalg.solve(M.T @ M, M.T @ c.T).T                               # (F, 2) alpha, beta per frame
    residual = (c - ab @ M.T).norm(dim=1)                                       # (F,)
    gain = ab.sum(1)                                                            # (F,) brightness
    progress = ab[:, 1] / gain.clamp(min=1e-6)                                  # (F,)
    on_blend = (residual < SEGMENT_TOL) & (ab.amin(1) > -PROGRESS_TOL) & (gain > GAIN[0]) & (gain < GAIN[1])
    return on_blend & f["is_full"], progress[1:] >= progress[:-1] - PROGRESS_TOL


def _end_colours(f):
    """The palette colours of the first and the last frame: a transition's A and B."""
    return _nearest_colour(_unit(f["mean"][0])), _nearest_colour(_unit(f["mean"][-1]))


def read_video(video):
    """The oracle. video (F, 3, H, W) in [-1, 1] -> a dict like parse_prompt's, or {'scene': 'none'}.
    Besides the prompt's values, an object can read as shape 'unknown' (a blob that is none of the three) and
    motion 'static' or 'erratic' (steps in no consistent direction). Motion is read from the path of the blob's centre: orbits need at least 3 frames, and
    a transition's target colour shows only in videos of at least TRANSITION_FRAMES frames."""
    f = _frame_features(video)
    if f["is_full"].float().mean() >= QUORUM:
        a, b = _end_colours(f)
        on_blend, forward = _blend_fit(f, a, b)
        if on_blend.float().mean() >= QUORUM and forward.float().mean() >= QUORUM:
            return {"scene": "transition", "colour_from": a, "colour_to": b}
        return {"scene": "none"}
    if f["is_object"].float().mean() >= QUORUM:
        return _read_object(f, list(range(video.shape[0])))
    return {"scene": "none"}


def object_centres(video):
    """video (F, 3, H, W) in [-1, 1] -> (cx, cy), each (F,): the oracle's per-frame centre of the brightest blob, in
    pixels, as circular means on the torus (for diagnostics that follow an object frame by frame)."""
    f = _frame_features(video)
    return f["cx"], f["cy"]


def read_video_windows(video, window=3, reference=None):
    """Per start frame i, the attributes that hold in frames [i, i + window): a list of F - window + 1 dicts.
    Every frame of a window must be an object frame (or a full-frame colour frame) for it to count.
    A transition window is judged against the colours A -> B of `reference` (a prompt or parse_prompt dict;
    default: the colours of the video's first and last frames): its frames must be blends of A and B that
    never move back towards A, which is what 'transitioning from A to B' means a few frames at a time
    (so a window that holds B after the transition counts)."""
    Fr = video.shape[0]
    assert 1 <= window <= Fr, f"window must be in [1, {Fr}] for a {Fr}-frame video, got {window}"
    f = _frame_features(video)
    reference = parse_prompt(reference) if isinstance(reference, str) else reference
    a, b = (reference["colour_from"], reference["colour_to"]) if reference and reference["scene"] == "transition" \
        else _end_colours(f)
    on_blend, forward = _blend_fit(f, a, b)
    out = []
    for i in range(Fr - window + 1):
        if on_blend[i:i + window].all() and forward[i:i + window - 1].all():
            out.append({"scene": "transition", "colour_from": a, "colour_to": b})
        elif f["is_object"][i:i + window].all():
            out.append(_read_object(f, list(range(i, i + window))))
        else:
            out.append({"scene": "none"})
    return out


def _compare(reading, prompt):
    want = parse_prompt(prompt)
    hits = {k: reading.get(k) == v for k, v in want.items()}
    hits["all"] = all(hits.values())
    return hits


def adherence(video, prompt):
    """Does the video show its prompt? {attribute: bool, ..., 'all': bool}, attributes as in parse_prompt(prompt):
    scene/colour/shape/motion for objects, scene/colour_from/colour_to for transitions."""
    return _compare(read_video(video), prompt)


def window_adherence(video, prompt, window=3):
    """Per start frame i, does the window [i, i + window) show the prompt? list[bool] (for drift curves)."""
    return [_compare(r, prompt)["all"] for r in read_video_windows(video, window, reference=prompt)]


if __name__ == "__main__":
    # python toydata.py --prompt "A red circle moving clockwise" --grid truth.png : ground-truth film strips,
    # with what the oracle reads from each video
    import argparse
    import sys
    ap = argparse.ArgumentParser(description="Render ground-truth toy videos as a PNG film strip.")
    ap.add_argument("--prompt", action="append", help="a prompt (repeatable)")
    ap.add_argument("--prompts_file", help="a text file with one prompt per line")
    ap.add_argument("--num_frames", type=int, default=12)
    ap.add_argument("--resolution", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0, help="video i uses seed + i")
    ap.add_argument("--grid", default="truth.png", help="where the PNG strip goes")
    args = ap.parse_args()
    texts = list(args.prompt or [])
    if args.prompts_file:
        with open(args.prompts_file) as f:
            texts += [line.strip() for line in f if line.strip()]
    try:
        videos = render_batch(texts, [args.seed + i for i in range(len(texts))], args.num_frames, args.resolution)
    except (ValueError, AssertionError) as e:
        sys.exit(f"error: {e}")
    from sample import save_strip
    for p, v in zip(texts, videos):
        r = read_video(v)
        print(f"{p!r}: the oracle reads {prompt_from_attributes(r) if r['scene'] != 'none' else 'no single object'}")
    print(f"grid: {save_strip(videos, texts, args.grid)}")
