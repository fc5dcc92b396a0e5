"""CAM++ (3D-Speaker CAMPPlus) speaker model in plain torch.

Modules (import them directly; this package file imports nothing so that importing
``speakerdb.model.campplus.weights`` stays free of torch):

* ``fbank``   - Kaldi-compatible log-mel fbank, ``fbank(wave) -> (B, T, 80)``.
* ``network`` - ``CAMPPlus`` (features → 192-D) and ``CamppWave`` (16 kHz waveform → 192-D).
* ``ops``     - matrix-product forms of the 1×1 and kernel-3 (dilated) convs, stats pooling.
* ``folded``  - ``FoldedCampp(mrl)``: the inference form of CAM++ with its head (BatchNorm folded,
  time-major, frozen trace per device), the default of ``load_embedder("campplus")``.
* ``weights`` - ``ensure_weights(CAMPPLUS)``: the verified weight file in the user cache.
* ``loader``  - ``load_campplus(path)``: checked, strict state-dict loading.
"""

__all__: list[str] = []
