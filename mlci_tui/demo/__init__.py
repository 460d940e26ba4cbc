"""`mlci demo`: a small real ML project built, committed through the hooks, validated and swept."""
