"""`make demo`: the product's main job on the embedded default (see `monitor.demo.run`)."""
