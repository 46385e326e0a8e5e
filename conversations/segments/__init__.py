"""Dynamic segments: rules, definitions, and the engine that keeps memberships true."""
