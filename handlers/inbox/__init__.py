"""The inbox: what students write, staff's side of it, replies, quick replies and auto-replies."""
