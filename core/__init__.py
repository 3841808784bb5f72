"""LoRA Studio engine: configuration, estimation, data, training and export. Never imports gradio."""
