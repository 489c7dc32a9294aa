"""The suspect-model zoo: victim, piracy (extracted) and homologous models (DESIGN.md stage 2)."""
