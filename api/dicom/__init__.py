"""The DICOM receiver (C-STORE SCP): what it accepts, where it files it, what it runs after.

:mod:`api.dicom.objects` holds the allow-lists and the identity read from each instance,
:mod:`api.dicom.filing` the rules that choose a patient's session (or the quarantine),
:mod:`api.dicom.intake` the durable storage of one instance, :mod:`api.dicom.processing` the
work queued after an acknowledgement, and :mod:`api.dicom.receiver` the network service.
"""
