"""A synthetic tenant: messages and notifications shaped exactly as Microsoft Graph sends them."""
