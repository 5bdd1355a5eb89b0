"""The project's shared vocabulary: state names and the grammars of names, versions, image references,
requirements, sizes and times. Every package may import it; it imports nothing of the project."""
