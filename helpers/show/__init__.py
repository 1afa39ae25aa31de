"""What a notebook cell displays: image grids and source (:mod:`.images`), a pipeline's plan
(:mod:`.plan`), the benchmark plot (:mod:`.benchmark`), a Ray Data
execution live and after it ran (:mod:`.progress`)."""
