"""The agent console's services: transcript search, corrections, takeover, analytics, KB editing.

Routes in ``bot.web.routes_console`` / ``bot.web.routes_kb`` stay thin and call these.
"""
