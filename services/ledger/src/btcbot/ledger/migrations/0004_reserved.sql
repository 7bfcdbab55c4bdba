-- Placeholder so 0005 applies on its own branch (versions must run 1..n): issue 8's parallel work ships the
-- real 0004 (strategy positions / opening balances); at merge that file replaces this one.
SELECT 1;
