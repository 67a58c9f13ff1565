"""One upload run and its dry run: guards, compare modes, hard links as server-side copies."""
