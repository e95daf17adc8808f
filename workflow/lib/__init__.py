"""Code the stages share (MXNet, images, VOC files, metrics): imported by the stage entry points in workflow/."""
