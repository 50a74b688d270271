"""The event bus's actors: the buffered publisher and the durable subscriber."""
