"""What a notebook cell displays: image grids and source (:mod:`.images`), a pipeline's plan
(:mod:`.plan`), the benchmark plot (:mod:`.benchmark`)."""
