"""Paper-certificate payments: orders, WeChat Pay's word, refunds, flags, shipping and billing."""
