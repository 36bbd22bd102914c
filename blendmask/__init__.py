"""blendmask — a Detectron2 meta-architecture plugin (see its issue); nothing registered yet."""
