-- Events the uplink could not deliver in any batch the hub accepts (larger than its message
-- limit), set aside instead of wedging the uplink; kept for an operator, never deleted by
-- the gateway. Numbered 0010 to stay clear of other migrations being added alongside.
CREATE TABLE IF NOT EXISTS dead_letter (
    seq INTEGER PRIMARY KEY,
    event BLOB NOT NULL,
    reason TEXT NOT NULL,
    at_ms INTEGER NOT NULL
);
