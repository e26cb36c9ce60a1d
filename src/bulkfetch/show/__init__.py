"""What people see: observer events, the board of counters, the display (live table or
plain lines), and the one exit every outgoing line passes (masked, escaped)."""
