"""Model loading shared by every model service, by concern:

- :mod:`.spec`: what a service declares: :class:`~.spec.ModelServiceSettings` (``model``,
  ``weights``, ``device``, batching knobs) and a :class:`~.spec.ModelSpec` (family timm / open_clip /
  torchvision / kornia, which settings name the model and the weights, known tags and companion
  files), from which the weights files (``ambience models fetch``) and the session's weights derive;
  :func:`~.spec.required_weights` lists them per registered service.
- :mod:`.weights`: the weights catalogue entry (:class:`~.weights.WeightsFile`), verified resumable
  downloads, and resolving a weights setting to :class:`~.weights.ResolvedWeights` (hub tag, local
  file or seeded random weights; exit 2 naming the file and the fix when none can be had).
- :mod:`.timm_loader` / :mod:`.open_clip_loader`: where a family's hub tag lives and building the
  architecture with its weights, strictly (open_clip: extra model configs and the tag's build options).
- :mod:`.sessions`: the session Protocols a model backend implements (preprocess on the caller's
  thread, embed a batch), :class:`~.sessions.PixelPipeline`, device selection, /health fields.
- :mod:`.batching`: :class:`~.batching.MicroBatcher`, one forward pass for all waiting requests.

Only :mod:`.timm_loader`, :mod:`.open_clip_loader` and :mod:`.sessions` touch torch, and lazily.
"""
