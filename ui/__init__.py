"""LoRA Studio's Gradio front end. Imports core; core never imports this package."""
