"""Quantization as a step of a deployment: reproducible, cached in the model store, gated.

- :mod:`.recipe`: the manifest's ``spec.quantize`` and the model's dimensions to a checked recipe
  (pure).
- :mod:`.pinned`: calibration and evaluation texts, shipped or pinned by sha256.
- :mod:`.artifact`: the cache key and the quantized artifacts in the model store.
- :mod:`.tool`: the quantizer's own virtualenv (llmcompressor beside a CPU torch).
- :mod:`.run`: build an artifact (runs :mod:`.worker` in that virtualenv) and apply the gate.
- :mod:`.worker`: the standalone script that quantizes and measures perplexity.
"""
