"""Fine-tuning and chat: a pretrained run taught to answer in a chat template (a feature on top of the core).

conversations.py   the JSONL format, its validation, the chat template, the built-in Q&A set
data.py            conversations as the trainer's dataset: padded examples, masked loss
lora.py            LoRA adapters, merged into plain weights in checkpoints
settings.py        which settings a fine-tune runs with (FinetuneConfig, model, train), new or resumed
voice.py           a chat export (WhatsApp, Telegram, ChatGPT) as conversations in its owner's voice (--me)
trainer.py         finetune(): source run + conversations → a fine-tuned run
chat.py            Chat: the conversation state and one streamed reply at a time
"""
