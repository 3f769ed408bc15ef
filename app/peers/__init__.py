"""The signed-in app's live links with its contacts: sessions made on demand, their transfers and calls."""
