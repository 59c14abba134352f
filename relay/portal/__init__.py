"""Patient portal invitations: links, verification, consent, the portal's upload session."""
