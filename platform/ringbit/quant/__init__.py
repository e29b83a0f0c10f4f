"""Low-bit quantization: BitLinear, packing, the packed CPU kernel."""
