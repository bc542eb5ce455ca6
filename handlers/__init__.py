"""Business flows: plain functions over a database session. No flask; they flush, the boundary commits."""
