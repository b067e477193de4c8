"""ONNX loader: every stored tensor enumerated, weighted ops become layers, the graph gives
activations.

The file is parsed with ``onnx.load(..., load_external_data=False)``: embedded tensors are decoded
from the proto on demand, external ones are memory-mapped one at a time from files that must sit
inside the model's folder (checkpoint-formats.md, ONNX section). Nothing in the graph is run.

One module per concern:

* :mod:`.decode` - TensorProto -> numpy, with the size checks against shape bombs;
* :mod:`.external` - external-data path safety and lazy loaders;
* :mod:`.graph` - the flattened graph (main graph, If/Loop/Scan bodies, inlined local functions)
  and weight tracing through Cast/Transpose/Reshape/DequantizeLinear;
* :mod:`.inventory` - every stored tensor of every graph, subgraph and function (accounting);
* :mod:`.builder` - layers for the standard weighted ops;
* :mod:`.quantized` - integer and QDQ graphs, MatMulNBits, dequantized into kernels;
* :mod:`.contrib` - onnxruntime contrib ops (FusedConv, Attention, EmbedLayerNormalization...);
* :mod:`.walk` - activation walking.
"""

from __future__ import annotations

from .builder import from_proto, load

__all__ = ["from_proto", "load"]
