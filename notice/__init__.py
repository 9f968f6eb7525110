"""The notice context: chat notifications for every state change (filled by the saga issue)."""
