# The tiny run: a 2-core laptop CPU, about 13 minutes for all four stages.
# train.py's defaults ARE the tiny run; this file names them so the command reads the same for every config.
out_dir = "out/tiny"
