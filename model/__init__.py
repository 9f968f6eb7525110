"""The model context: ModelRequest, from request to approval, training and completion."""
