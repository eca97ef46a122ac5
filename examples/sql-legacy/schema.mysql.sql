-- A small legacy business system on MySQL/MariaDB: its stock items, a view of what goes to the web shop, and
-- the staging tables its nightly import reads web orders from (it sets status to 'I' once imported).

CREATE TABLE stkitem (
    itemno   VARCHAR(20) PRIMARY KEY,
    descr    VARCHAR(60) NOT NULL,
    brand    VARCHAR(30),
    sellinc  NUMERIC(12,2) NOT NULL,      -- sell price including GST
    webflag  CHAR(1) NOT NULL DEFAULT 'N',
    lastmod  DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP   -- local time, set by the system on every change
);

CREATE VIEW web_products AS
    SELECT itemno, descr, brand, sellinc, lastmod FROM stkitem WHERE webflag = 'Y';

CREATE TABLE webord_hdr (
    ordref    VARCHAR(20) NOT NULL UNIQUE,   -- the shop's order number: exactly once
    orddate   DATETIME NOT NULL,
    custcode  VARCHAR(20),
    email     VARCHAR(80),
    shipname  VARCHAR(60),
    shipstreet VARCHAR(80),
    shipcity  VARCHAR(40),
    shippcode VARCHAR(10),
    freight   NUMERIC(12,2) NOT NULL,
    gst       NUMERIC(12,2) NOT NULL,
    total     NUMERIC(12,2) NOT NULL,
    status    CHAR(1) NOT NULL DEFAULT 'N'   -- N new, I imported
);

CREATE TABLE webord_lin (
    ordref  VARCHAR(20) NOT NULL REFERENCES webord_hdr (ordref),
    lineno  INTEGER NOT NULL,
    itemno  VARCHAR(20) NOT NULL,
    qty     NUMERIC(10,3) NOT NULL,
    price   NUMERIC(12,4) NOT NULL,
    gst     NUMERIC(12,2) NOT NULL,
    amount  NUMERIC(12,2) NOT NULL,
    PRIMARY KEY (ordref, lineno)
);

INSERT INTO stkitem (itemno, descr, brand, sellinc, webflag, lastmod) VALUES
    ('SPD-1001', 'Garden spade, long handle', 'Cyclone', 49.95, 'Y', '2026-03-01 09:00:00'),
    ('RKE-2001', 'Leaf rake, 22 tines',      'Cyclone', 24.50, 'Y', '2026-03-01 09:05:00'),
    ('WBR-3001', 'Wheelbarrow 100 l',        'Trojan', 189.00, 'Y', '2026-03-01 09:10:00'),
    ('INT-9999', 'Internal: shop rag',        NULL,       1.00, 'N', '2026-03-01 09:15:00');
