"""The Textual front end (`mlci tui`). The core never imports this package."""
