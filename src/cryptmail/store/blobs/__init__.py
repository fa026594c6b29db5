"""cryptmail.store.blobs."""
