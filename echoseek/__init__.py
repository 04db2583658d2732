"""echoseek: learn, index and serve image similarity search on Ray.

The package is flat at the repository root so that ``ray job submit --working-dir .`` ships it to
every worker without an install step. Importing it has no side effects and pulls in neither
torch nor Ray; each job imports what it needs.
"""

__version__ = "0.1.0"
