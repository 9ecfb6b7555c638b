"""SMS and e-mail to debtors: templates, the compliance guard, pluggable providers, receipts."""
