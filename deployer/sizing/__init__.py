"""Engine-neutral sizing data: accelerators and their prices, a model's shape from its files,
the catalog of published configs, and the capacity plan every engine fills in."""
