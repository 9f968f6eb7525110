"""The target context: TargetRequest, from request to approval, extraction and completion."""
