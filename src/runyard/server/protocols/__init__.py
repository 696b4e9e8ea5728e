"""Each adapter's wire protocol as plain functions, apart from its HTTP handlers (server/routes/)."""
