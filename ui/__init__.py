"""Streamlit-side helpers for the dashboard: session state, caching, plots, images, jobs and error
display. Nothing here trains or evaluates; pages call core through these thin helpers."""
