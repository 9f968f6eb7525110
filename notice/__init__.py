"""The notice context: a chat message for every state change of a model or target request."""
