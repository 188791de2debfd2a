"""Speech recognition with Whisper (paper §11.4).

- :mod:`~ftkit.asr.speech` — offline speech synthesis (eSpeak NG) and resampling;
- :mod:`~ftkit.asr.audio` — the spoken-jargon dataset, augmentation and input checks;
- :mod:`~ftkit.asr.whisper` — the encoder cache, decoder fine-tuning, WER and CER.

Used in notebooks/16_whisper_asr.ipynb.
"""
