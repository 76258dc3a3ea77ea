"""Knowledge base: documents, chunks, embeddings and search."""
