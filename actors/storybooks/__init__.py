"""Storybooks: submitting a book (``intake``), running it line by line (``runner``) and making
its outputs (``outputs``). See docs/ARCHITECTURE.md, "Storybooks"."""
